'use strict';
// The admin's navigation starts collapsed: the lists need the width. Django's sidebar script (loaded after this one)
// opens it when nothing is stored; a choice the user made with its toggle is stored, and kept.
if (localStorage.getItem('django.admin.navSidebarIsOpen') === null) {
    localStorage.setItem('django.admin.navSidebarIsOpen', 'false');
}
